"""The run folder: its layout and record (`folder`), its checkpoint files (`checkpoint`) and
the extra places its records go (`sinks`). Everything that reads or writes a run folder's
files lives here.
"""

from vitmae.runs.folder import RunDir, metric_records, read_data_info, run_differences, run_dir_of

__all__ = ["RunDir", "metric_records", "read_data_info", "run_differences", "run_dir_of"]
