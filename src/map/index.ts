export { SharedMap } from './shared-map.js';
export type { Eviction, SharedMapCreateOptions, SharedMapHandleOptions, SharedMapOpenOptions, SharedMapSetOptions, SharedMapUpdateOptions } from './shared-map.js';
