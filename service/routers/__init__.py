"""HTTP routes: speech (student and teacher), info (voices, models), health and metrics, web page."""
