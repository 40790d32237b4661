-- Keep-alive reuse: requests per client connection (flow) and how long it was in use.
select process_kname_0 as client, ip_1 || ':' || server_port as server, flow_id,
       count(*) as requests, min(start_time) as first, max(end_time) as last
from l7_flow_log
where observation_point = 'c-p'
group by process_kname_0, ip_1, server_port, flow_id
order by requests desc
limit 20;
