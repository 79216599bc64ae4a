package transport

import "crypto/tls"

// ForHost returns cfg (a Certs.TLSConfig) for dialling host, which may be an
// IP address: its server certificate is checked against host even where Go
// sends no server name (an IP). For callers that dial with crypto/tls
// themselves, such as the web console reading peers' /metrics.
func ForHost(cfg *tls.Config, host string) *tls.Config { return forHost(cfg, host) }
