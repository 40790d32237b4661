-- Who calls whom, from assembled traces: each client call (c-p) with the server process span
-- that made it as its parent gives one edge of the service map, with call counts and latency.
-- The process names come from eBPF (process_kname_0/1); no headers are needed.
with t as (
    select _id, parent_id, observation_point, process_kname_0, process_kname_1,
           server_port, response_duration
    from traces(now() - interval '1 hour', now())
)
select coalesce(case when parent.observation_point = 's-p' then parent.process_kname_1 end,
                '(client)') as caller,
       call.process_kname_0 as via_process,
       call.server_port as callee_port,
       count(*) as calls,
       cast(avg(call.response_duration) as bigint) as avg_us
from t call
left join t parent on call.parent_id = parent._id
where call.observation_point = 'c-p'
group by 1, 2, 3
order by calls desc, caller;
