"""The benchmark behind bench/run.py, one file per job: procs (the run's
context, child processes, /proc, servers), stress (the stress client, one
measured run, the skeleton every comparison shares), cases (what each part
runs), build (binaries, C references, Wine) and tables (the Markdown)."""
