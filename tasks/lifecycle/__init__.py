"""A prefix's backups over time: retention (`prune`: delete the restore points a policy drops,
and the objects no remaining manifest references). What is kept is decided by layout/chains.py."""
