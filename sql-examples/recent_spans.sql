-- The latest spans, newest first: who called whom, what, how long.
select start_time, observation_point, coalesce(process_kname_0, process_kname_1) as process,
       ip_0 || ':' || client_port as client, ip_1 || ':' || server_port as server,
       request_type, request_resource, response_code, response_duration as duration_us
from l7_flow_log
order by start_time desc
limit 20;
