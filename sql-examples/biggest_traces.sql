-- The largest traces of the last hour, assembled at query time with traces(): how many spans,
-- how deep, how many processes and NICs saw them, and what the root asked for. traces() joins
-- every span in the window into trees (TCP sequence numbers, syscall trace ids, X-Request-ID,
-- trace ids) and adds trace_uid, parent_id, depth and span_order to l7_flow_log's columns.
select trace_uid,
       count(*) as spans,
       max(depth) + 1 as depth,
       count(*) filter (where signal_source = 'ebpf') as process_spans,
       count(*) filter (where signal_source = 'packet') as packet_spans,
       max(case when parent_id is null then request_type || ' ' || request_resource end) as root_request,
       max(response_duration) filter (where parent_id is null) as root_duration_us
from traces(now() - interval '1 hour', now())
group by trace_uid
order by spans desc, trace_uid
limit 10;
