/** Edits of a snapshot's meta.bin for tests that forge files (lib/memory/metaColumns.ts). */
import { type ColumnName, MetaColumns } from '../../lib/memory/metaColumns';

/** The file with `column`'s entry at `row` set to `value` (float64 or int32 as the column is). */
export function editMeta(buf: Buffer, column: Exclude<ColumnName, 'stateBytes'>, row: number, value: number): Buffer {
  const out = Buffer.from(buf);
  const { offset } = MetaColumns.parseLayout(out, out.length).columns[column];
  if (column === 'action' || column === 'source') out.writeInt32LE(value, offset + 4 * row);
  else out.writeDoubleLE(value, offset + 8 * row);
  return out;
}

/** The file with a copy of row `row` appended. */
export function appendMetaRow(buf: Buffer, row = 0): Buffer {
  const metas = MetaColumns.decode(buf).toObjects();
  return MetaColumns.fromObjects([...metas, { ...metas[row] }]).encode();
}
