"""Reports: leaderboards and tables read from `results.csv`; knows nothing of models or data."""
