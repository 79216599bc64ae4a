package transport

import (
	"context"

	"github.com/cubekv/cubekv/thrift/kv"
)

// The lease calls are not exercised by the transport tests.

func (h *srvTestHandler) GrantLease(context.Context, *kv.LeaseGrantRequest) (*kv.LeaseGrantResponse, error) {
	return nil, errNotImplemented
}

func (h *srvTestHandler) KeepAlive(context.Context, *kv.KeepAliveRequest) (*kv.KeepAliveResponse, error) {
	return nil, errNotImplemented
}

func (h *srvTestHandler) RevokeLease(context.Context, *kv.LeaseRevokeRequest) (*kv.LeaseRevokeResponse, error) {
	return nil, errNotImplemented
}

func (h *srvTestHandler) LeaseInfo(context.Context, *kv.LeaseInfoRequest) (*kv.LeaseInfo, error) {
	return nil, errNotImplemented
}

func (h *srvTestHandler) ListLeases(context.Context, *kv.LeaseListRequest) (*kv.LeaseListResponse, error) {
	return nil, errNotImplemented
}
