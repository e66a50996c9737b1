export { Topic } from './topic.js';
export type { TopicCreateOptions, TopicOpenOptions, TopicHandleOptions, TopicShapeOptions, TopicStats, SubscribeOptions, Overflow, WaitStrategy, From } from './topic.js';
export { Subscriber } from './subscriber.js';
