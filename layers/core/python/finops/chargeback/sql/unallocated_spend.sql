-- unallocated_spend: Spend that no department owns yet: projects without a department, and calls whose cost tags were missing or invalid (observe mode).
-- Parameters: 1 = first day of the billing month (YYYY-MM-DD), 2 = first day of the next month (exclusive).
-- missing_tags lists the headers that were booked to 'unallocated' ('' when the tags were fine but the project maps to no department).
SELECT
  project_id,
  user_id,
  environment,
  unallocated_tags AS missing_tags,
  CAST(COUNT(DISTINCT COALESCE(call_id, request_id)) AS BIGINT) AS requests,
  CAST(SUM(cost_usd) AS DECIMAL(38, 10)) AS cost_usd,
  CAST(SUM(tax_usd) AS DECIMAL(38, 10)) AS tax_usd,
  CAST(SUM(cost_usd + tax_usd) AS DECIMAL(38, 10)) AS billed_usd
FROM usage
WHERE dt >= ? AND dt < ?
  AND (department_id = 'unallocated' OR unallocated_tags <> '')
GROUP BY project_id, user_id, environment, unallocated_tags
ORDER BY billed_usd DESC, project_id, user_id, environment, missing_tags
