-- Slowest endpoints as their servers see them (s-p spans): p50, p99 and max latency.
select request_domain, endpoint, count(*) as requests,
       approx_percentile_cont(response_duration, 0.5) as p50_us,
       approx_percentile_cont(response_duration, 0.99) as p99_us,
       max(response_duration) as max_us
from l7_flow_log
where observation_point = 's-p'
group by request_domain, endpoint
order by p99_us desc
limit 20;
