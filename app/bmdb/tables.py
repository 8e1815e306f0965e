"""Names of the BMDB's tables that webug relies on by name (their schema: sql/migrations/).

Tag tables are discovered by reflection; these are the ones whose meaning webug knows
(filters, overview, the list's summary of a machine). Code that needs one checks that
reflection found it: a BMDB of an older schema version may lack it.
"""

PROVIDED = "machine_provided"
AGENT_STARTED = "machine_agent_started"
HEARTBEAT = "machine_agent_heartbeat"
INSTALLATION_REQUEST = "machine_os_installation_request"
INSTALLATION_REPORT = "machine_os_installation_report"
