"""`specrl-sglang stats`: how well reuse works, read from a running server, a report or a snapshot.

sources.py loads per-step rows (server /stats, the server's JSONL report, the demo's report.json)
or a store summary (a trajectory-store snapshot) into one `StatsReport`; table.py prints it;
plot.py draws it; html_report.py writes a self-contained HTML page; main.py is the subcommand.
"""
