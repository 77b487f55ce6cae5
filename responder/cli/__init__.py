"""The command line behind ``run.py``: one handler per command, each taking settings and args."""
