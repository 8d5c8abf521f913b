export * from './schema.ts';
export * from './messages.ts';
export * from './codec.ts';
export * from './hints.ts';
