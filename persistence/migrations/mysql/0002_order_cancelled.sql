-- An order's cancelled quantity gets its own column: what left the book unfilled when the
-- order was cancelled or expired. Until now a closed order's row kept qty = filled + the
-- leaves it had when it closed (leaves set to 0), so that difference is the cancelled part.
ALTER TABLE orders ADD COLUMN cancelled BIGINT NOT NULL DEFAULT 0 AFTER filled;
UPDATE orders SET cancelled = qty - filled - leaves WHERE is_open = 0;
