// The PROXY v1/v2 header parser moved to runtime/shared/proxy-header.ts so the
// HTTP API reads the same header; this keeps the SMTP session's import as it was.
export { parseProxyHeader, type ProxyInfo, type ProxyParse } from '../../../shared/proxy-header';
