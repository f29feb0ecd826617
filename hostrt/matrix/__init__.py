"""`hostrt matrix`: one command in every cell (platform x backend), results as a table, JSON or JUnit."""
