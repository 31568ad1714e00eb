-- The presignatures a signature can still take: 1 on a Completed presign operation that no
-- signature consumed and no committee member discarded, NULL on every other operation. When a
-- signature becomes Ready the coordinator reads only these, through their own index, instead
-- of every Completed operation (a vault's used presignatures pile up among them).
ALTER TABLE operations ADD COLUMN presignature_free INTEGER;
UPDATE operations SET presignature_free = 1
    WHERE kind = 'Presign' AND state = 'Completed'
      AND json_extract(body, '$.details.consumed_by') IS NULL
      AND json_extract(body, '$.details.discarded_by') IS NULL;
CREATE INDEX operations_free_presignatures ON operations(vault_id, created_at) WHERE presignature_free = 1;
