"""One module per view; each handler says where its data comes from (app.bmdb)."""
