-- top_spenders: The 20 users with the largest billed spend in the month, with their department and how many projects they used.
-- Parameters: 1 = first day of the billing month (YYYY-MM-DD), 2 = first day of the next month (exclusive).
SELECT
  user_id,
  department_id,
  CAST(COUNT(DISTINCT project_id) AS BIGINT) AS projects,
  CAST(COUNT(DISTINCT COALESCE(call_id, request_id)) AS BIGINT) AS requests,
  CAST(SUM(cost_usd) AS DECIMAL(38, 10)) AS cost_usd,
  CAST(SUM(tax_usd) AS DECIMAL(38, 10)) AS tax_usd,
  CAST(SUM(cost_usd + tax_usd) AS DECIMAL(38, 10)) AS billed_usd
FROM usage
WHERE dt >= ? AND dt < ?
GROUP BY user_id, department_id
ORDER BY billed_usd DESC, user_id, department_id
LIMIT 20
