export { compile, compileChecked, compileCheckedInto, compileInto, validate, type CompileHooks, type CompiledState, type CompiledSummary, type SkippedEndpoint } from './compile.js';
export { explain, type Explanation, type EndpointMatch } from './explain.js';
export { classifyFilter, type FilterInfo, type FilterKind } from './filters.js';
export type { DesiredState, EndpointEntry, EntrySink, Exclusions, PolicyEntry, RuleInfo, Locality, ServiceBackend, ServiceVip, Verdict } from './types.js';
export { compileWds } from './wds.js';
