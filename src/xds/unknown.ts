// Unknown fields on the wire. protobufjs skips fields our protos do not know,
// so a field istiod adds after our copy of workload.proto would vanish in
// decoding. For WDS that is unsafe (a new field could mean "this workload needs
// L7"), so the decoder lists them and the compiler keeps whatever carries one
// on ztunnel's path. Walks the wire format against the type; packed or not,
// any encoding our protos accept is recognised.
import protobuf from 'protobufjs';

const MAX_DEPTH = 32;

/** Paths of fields present in `bytes` that `type` does not declare, e.g. "workload.waypoint#9". */
export function unknownFields(type: protobuf.Type, bytes: Uint8Array, where = '', depth = 0): string[] {
  const out: string[] = [];
  const r = protobuf.Reader.create(bytes);
  while (r.pos < r.len) {
    const tag = r.uint32();
    const id = tag >>> 3;
    const wire = tag & 7;
    const field = type.fieldsById[id];
    if (!field) {
      out.push(`${where}#${id}`);
      r.skipType(wire);
      continue;
    }
    const rt = field.resolvedType;
    const fp = where ? `${where}.${field.name}` : field.name;
    if (wire === 2 && depth < MAX_DEPTH && (rt instanceof protobuf.Type || field.map)) {
      const sub = r.bytes();
      if (field.map) {
        // a map entry is a message {1: key, 2: value}; only message values can hide fields
        if (rt instanceof protobuf.Type) out.push(...mapValueUnknowns(rt, sub, fp, depth + 1));
      } else if (rt instanceof protobuf.Type && rt.fullName !== '.google.protobuf.Any') {
        out.push(...unknownFields(rt, sub, fp, depth + 1));
      }
      continue;
    }
    r.skipType(wire);
  }
  return out;
}

function mapValueUnknowns(valueType: protobuf.Type, entry: Uint8Array, where: string, depth: number): string[] {
  const out: string[] = [];
  const r = protobuf.Reader.create(entry);
  while (r.pos < r.len) {
    const tag = r.uint32();
    const id = tag >>> 3;
    const wire = tag & 7;
    if (id === 2 && wire === 2) out.push(...unknownFields(valueType, r.bytes(), `${where}[]`, depth));
    else if (id === 1) r.skipType(wire);
    else {
      out.push(`${where}[]#${id}`);
      r.skipType(wire);
    }
  }
  return out;
}
