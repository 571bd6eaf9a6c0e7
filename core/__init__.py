"""What every layer shares and that depends on none of them: the error family (core.errors) and
the connection settings (core.connections). Nothing here imports the command line (kbackup/)."""
