-- Row 2 guarded: the same tenant's rows through the policy.
SELECT count(*), sum(amount) FROM bench.orders;
