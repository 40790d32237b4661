-- What the agent saw and what it dropped or could not parse (live counters).
select name, value, description
from ingest_counters
order by name;
