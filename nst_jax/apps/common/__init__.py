"""What the tools share instead of importing each other: the runner (exits, Ctrl-C), flags,
progress lines, a run's output file, a sweep's files, plots, the compilation cache."""
