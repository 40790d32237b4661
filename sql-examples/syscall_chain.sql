-- Inbound requests and the outbound calls their thread made while serving them, linked by
-- syscall_trace_id (no header needed): the s-p span's request id equals the first call's.
select s.process_kname_1 as service, s.request_resource as inbound,
       c.request_domain as called_host, c.request_resource as outbound,
       c.response_code as outbound_code, c.response_duration as outbound_us,
       s.response_duration as inbound_us
from l7_flow_log s
join l7_flow_log c
  on s.syscall_trace_id_request = c.syscall_trace_id_request
 and s.process_id_1 = c.process_id_0
where s.observation_point = 's-p' and c.observation_point = 'c-p'
order by s.start_time desc
limit 20;
