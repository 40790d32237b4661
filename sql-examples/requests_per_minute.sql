-- Requests per minute and service: the RED "rate" series (Grafana: Format as time series).
select date_trunc('minute', start_time) as time, process_kname_1 as metric, count(*) as requests
from l7_flow_log
where observation_point = 's-p'
group by 1, 2
order by 1, 2;
