package server

import (
	"context"
	"fmt"
	"net/http"

	"github.com/hookhouse/hookhouse/internal/web"
)

// dashboard is the field type of Server.web (kept here so server.go needs no import).
type dashboard = web.Web

// registerWeb adds the dashboard and /status pages (internal/web).
func (s *Server) registerWeb(mux *http.ServeMux) {
	if s.web == nil {
		var clusterPanel func() *web.Cluster
		if s.cluster != nil {
			clusterPanel = func() *web.Cluster { return webCluster(s.clusterStatus(true)) }
		}
		d, err := web.New(web.Options{
			Cluster: clusterPanel,
			Control: s.control, Stats: s.apiStats, Warehouse: s.wh, Status: s.webStatus, Reset: s.reset,
			History: s.history.Points, // opened in Open before the handler is built
			// Logins are kept in the state (hashed), so a restart does not end them.
			Sessions:       s.state,
			SharedSessions: s.cluster != nil,
			PublicURL:      s.cfg.PublicURL, Logger: s.logger.With("component", "web"),
		})
		if err != nil {
			// The templates are embedded in the binary: this is a build defect, and
			// start-up must stop here rather than serve a broken dashboard.
			panic(fmt.Sprintf("server: dashboard: %v", err))
		}
		s.web = d
	}
	s.web.Register(mux)
}

// hasSession reports whether r carries a dashboard session.
func (s *Server) hasSession(r *http.Request) bool { return s.web != nil && s.web.HasSession(r) }

// webStatus is Status in the dashboard's types.
func (s *Server) webStatus(ctx context.Context, details bool) web.Status {
	st := s.Status(ctx, details)
	out := web.Status{Status: st.Status, Version: st.Version}
	for _, c := range st.Components {
		out.Components = append(out.Components, web.Component{Name: c.Name, Status: c.Status, Message: c.Message})
	}
	for _, in := range st.Integrations {
		out.Integrations = append(out.Integrations, web.IntegrationStatus{ID: in.ID, Name: in.Name, Schema: in.Schema, LoaderNode: in.LoaderNode, Stats: in.Stats})
	}
	out.Cluster = webCluster(st.Cluster)
	return out
}

// webCluster is ClusterStatus in the dashboard's types.
func webCluster(c *ClusterStatus) *web.Cluster {
	if c == nil {
		return nil
	}
	out := &web.Cluster{Node: c.Node}
	if n := c.NATS; n != nil {
		out.Details = true
		out.Servers, out.Connected, out.Stream = n.Servers, n.Connected, n.Stream
		out.ReplicasError, out.ControlWatch = n.ReplicasError, n.ControlWatch
		for _, r := range n.Replicas {
			out.Replicas = append(out.Replicas, web.Replica{Name: r.Name, Leader: r.Leader, Current: r.Current, Lag: r.Lag})
		}
	}
	return out
}
