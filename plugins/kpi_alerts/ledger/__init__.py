"""The alerts database: migrations, named queries, claims, due selection and the alert store — the only code that runs SQL."""
