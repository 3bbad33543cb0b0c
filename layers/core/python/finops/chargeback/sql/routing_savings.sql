-- routing_savings: What routing saved per department: the cost of the requested (reference) models minus what the routed calls cost.
-- Parameters: 1 = first day of the billing month (YYYY-MM-DD), 2 = first day of the next month (exclusive).
SELECT
  department_id,
  CAST(COUNT(DISTINCT COALESCE(call_id, request_id)) AS BIGINT) AS requests,
  CAST(COUNT(DISTINCT CASE WHEN route_strategy IS NOT NULL THEN COALESCE(call_id, request_id) END) AS BIGINT)
    AS routed_requests,
  CAST(SUM(counterfactual_usd) AS DECIMAL(38, 10)) AS counterfactual_usd,
  CAST(SUM(cost_usd) AS DECIMAL(38, 10)) AS cost_usd,
  CAST(SUM(counterfactual_usd - cost_usd) AS DECIMAL(38, 10)) AS savings_usd
FROM usage
WHERE dt >= ? AND dt < ?
GROUP BY department_id
ORDER BY savings_usd DESC, department_id
