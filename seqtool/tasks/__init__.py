"""Tasks: the one place where language modeling, translation and forecasting differ."""
