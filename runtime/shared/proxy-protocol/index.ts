export * from './codec';
export * from './channel';
export * from './handshake';
export * from './messages';
export * from './envelope';
export * from './client';
export * from './control-messages';
export * from './heartbeat';
