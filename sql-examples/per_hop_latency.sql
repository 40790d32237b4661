-- Per-request latency split: time inside the server process (s-p) versus everything between the
-- client's syscalls and the server's (network, kernel queues, proxies): c-p minus s-p.
select c.request_resource, c.start_time,
       c.response_duration as client_us,
       s.response_duration as server_us,
       c.response_duration - s.response_duration as outside_server_us
from l7_flow_log c
join l7_flow_log s
  on c.req_tcp_seq = s.req_tcp_seq and c.resp_tcp_seq = s.resp_tcp_seq
 and c.client_port = s.client_port and c.server_port = s.server_port
where c.observation_point = 'c-p' and s.observation_point = 's-p'
order by outside_server_us desc
limit 20;
