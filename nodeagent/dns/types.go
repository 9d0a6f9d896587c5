package dns

import "net/netip"

// Port is one port of a service, or of an endpoint (its target port).
type Port struct {
	// Name is the port's name; only named ports get _name._proto SRV names.
	Name string
	// Protocol is "TCP", "UDP" or "SCTP" (case does not matter).
	Protocol string
	Port     uint16
}

// Endpoint is one address behind a service.
type Endpoint struct {
	IP netip.Addr
	// Hostname names the endpoint under its service
	// (hostname.svc.ns.svc.<zone>), as StatefulSet pods have. Without one the
	// endpoint is named by its address with dashes (10-1-2-3).
	Hostname string
	Ready    bool
	// Ports are the endpoint's resolved target ports, named after the service
	// ports, for a headless service's SRV records. When empty the service's
	// ports are used.
	Ports []Port
}

// Service is the part of a Kubernetes Service (and its endpoints) that DNS
// serves. Exactly one of ClusterIP and ExternalName is set, or neither for a
// headless service.
type Service struct {
	Namespace, Name string
	// ClusterIP is the zero netip.Addr for a headless service.
	ClusterIP netip.Addr
	// ExternalName is the target of an ExternalName service's CNAME.
	ExternalName string
	Ports        []Port
	Endpoints    []Endpoint
	// PublishNotReadyAddresses publishes the endpoints that are not ready too.
	PublishNotReadyAddresses bool
}

// Pod is a pod's address, for its ns.pod.<zone> name and its PTR record.
type Pod struct {
	Namespace string
	IP        netip.Addr
}
