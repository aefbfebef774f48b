module github.com/straydtls/straydtls

go 1.25.0

require (
	github.com/cilium/ebpf v0.22.0
	github.com/pion/dtls/v2 v2.2.12
	github.com/pion/dtls/v3 v3.1.15
	github.com/pion/dtls/v4 v4.0.2
	github.com/pion/transport/v2 v2.2.10
	github.com/plgd-dev/go-coap/v3 v3.5.5
	github.com/prometheus/client_golang v1.24.1
	golang.org/x/net v0.58.0
	golang.org/x/sys v0.47.0
)

require (
	github.com/beorn7/perks v1.0.1 // indirect
	github.com/cespare/xxhash/v2 v2.3.0 // indirect
	github.com/dsnet/golib/memfile v1.0.0 // indirect
	github.com/munnerz/goautoneg v0.0.0-20191010083416-a7dc8b61c822 // indirect
	github.com/pion/logging v0.2.4 // indirect
	github.com/pion/transport/v3 v3.1.1 // indirect
	github.com/pion/transport/v5 v5.1.5 // indirect
	github.com/prometheus/client_model v0.6.3 // indirect
	github.com/prometheus/common v0.71.0 // indirect
	github.com/prometheus/procfs v0.22.0 // indirect
	go.uber.org/atomic v1.12.0 // indirect
	golang.org/x/crypto v0.55.0 // indirect
	golang.org/x/exp v0.0.0-20260611194520-c48552f49976 // indirect
	golang.org/x/sync v0.22.0 // indirect
	google.golang.org/protobuf v1.36.12 // indirect
)
