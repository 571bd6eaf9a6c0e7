"""What every layer shares and that depends on none of them: the error family (core.errors), the
connection settings (core.connections) and the cores a run may use (core.machine). Nothing here
imports the command line (kbackup/)."""
