//! Console capture shared by backends: log file, bounded tail, crash-line detection.
