-- monthly_bill_by_model: The monthly AI bill per provider and model that served the calls, with tokens by direction.
-- Parameters: 1 = first day of the billing month (YYYY-MM-DD), 2 = first day of the next month (exclusive).
SELECT
  provider,
  model,
  CAST(COUNT(DISTINCT COALESCE(call_id, request_id)) AS BIGINT) AS requests,
  CAST(SUM(input_tokens) AS BIGINT) AS input_tokens,
  CAST(SUM(cached_input_tokens) AS BIGINT) AS cached_input_tokens,
  CAST(SUM(COALESCE(cache_write_input_tokens, 0)) AS BIGINT) AS cache_write_input_tokens,
  CAST(SUM(output_tokens) AS BIGINT) AS output_tokens,
  CAST(SUM(cost_usd) AS DECIMAL(38, 10)) AS cost_usd,
  CAST(SUM(tax_usd) AS DECIMAL(38, 10)) AS tax_usd,
  CAST(SUM(cost_usd + tax_usd) AS DECIMAL(38, 10)) AS billed_usd
FROM usage
WHERE dt >= ? AND dt < ?
GROUP BY provider, model
ORDER BY billed_usd DESC, provider, model
