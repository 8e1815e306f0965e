"""What the pages share: the models documents decode into, and the pieces several pages
build them with (workflow status, search, failure groups, CSV rows). No routes here:
app/pages holds one module per view, and none imports another."""
