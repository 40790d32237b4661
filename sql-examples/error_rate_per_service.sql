-- Error rate per service (server process and port), from the server's own view.
select process_kname_1 as service, server_port, count(*) as requests,
       sum(case when response_code >= 400 then 1 else 0 end) as errors,
       round(100.0 * sum(case when response_code >= 400 then 1 else 0 end) / count(*), 2)
           as error_pct
from l7_flow_log
where observation_point = 's-p'
group by process_kname_1, server_port
order by error_pct desc, requests desc;
