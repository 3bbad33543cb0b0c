-- monthly_bill_by_model: The monthly AI bill per provider and model that served the calls, with tokens by direction.
-- requests: the calls each model answered, a call counted once under the model of its last attempt (a call that
-- fell back is the fallback model's), so the requests add up to the calls; attempts: every try, retries and
-- fallbacks included (rows). Costs and tokens are each row's, wherever it ran.
-- Parameters: 1 = first day of the billing month (YYYY-MM-DD), 2 = first day of the next month (exclusive).
WITH tries AS (
  SELECT
    *,
    ROW_NUMBER() OVER (
      PARTITION BY COALESCE(call_id, request_id) ORDER BY COALESCE(attempt, 0) DESC, request_id DESC
    ) AS from_last
  FROM usage
  WHERE dt >= ? AND dt < ?
)
SELECT
  provider,
  model,
  CAST(SUM(CASE WHEN from_last = 1 THEN 1 ELSE 0 END) AS BIGINT) AS requests,
  CAST(COUNT(*) AS BIGINT) AS attempts,
  CAST(SUM(input_tokens) AS BIGINT) AS input_tokens,
  CAST(SUM(cached_input_tokens) AS BIGINT) AS cached_input_tokens,
  CAST(SUM(COALESCE(cache_write_input_tokens, 0)) AS BIGINT) AS cache_write_input_tokens,
  CAST(SUM(output_tokens) AS BIGINT) AS output_tokens,
  CAST(SUM(cost_usd) AS DECIMAL(38, 10)) AS cost_usd,
  CAST(SUM(tax_usd) AS DECIMAL(38, 10)) AS tax_usd,
  CAST(SUM(cost_usd + tax_usd) AS DECIMAL(38, 10)) AS billed_usd
FROM tries
GROUP BY provider, model
ORDER BY billed_usd DESC, provider, model
