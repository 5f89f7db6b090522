// Public surface of src/xds: the ADS client, the file source, node identity,
// and the snapshot contract consumed by src/policy.
export * from './types.js';
export { XdsClient, backoffDelay, type XdsClientOptions, type BackoffOptions, ADS_SERVICE, SOTW_METHOD, DELTA_METHOD } from './client.js';
export { XdsFileSource, XdsParseError, loadSnapshotFile, snapshotFromDocument, parseText, type XdsFileSourceOptions, type ParseResult } from './file.js';
export { buildNode, discoverNodeIps, nodeId, type NodeOptions } from './node.js';
export { validateResource, edsServiceName, edsNames } from './validate.js';
export { anyToJson, messageToJson, jsonToMessage, jsonToAny, encodeJson, decodeToJson, ProtoJsonError } from './json.js';
export { protoRoot, lookupType, PROTO_FILES } from './protos.js';
