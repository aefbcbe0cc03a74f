"""Reports: summary tables of a results table (and, later, plots, HTML and the gate)."""
