"""All SQL the pages run: one module per subject (machines, sessions, ...).

Each function takes the page's `Snapshot` (app.db), so a page's queries share one
consistent read and show up in its footer. Queries cost in proportion to what a
page shows; reflected identifiers are quoted; values are always bound parameters.
"""
