package server

// Cluster mode (--nats): the state on a NATS JetStream cluster shared by every
// node, the control data followed from the other nodes, and what /status,
// the dashboard and /metrics show of the cluster.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hookhouse/hookhouse/internal/config"
	"github.com/hookhouse/hookhouse/internal/state"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
)

// natsTimeout bounds every write and read of the cluster, counted from the
// request's arrival: a webhook gets 503 + Retry-After within 5 s without a
// quorum.
const natsTimeout = 4 * time.Second

// cluster is what a node of a cluster has beyond a single node.
type cluster struct {
	nc    *nats.Conn
	js    *state.JetStream
	watch *state.ControlWatch // set by followControl
	node  string

	mu         sync.Mutex // the replicas' cache
	replicas   []state.Replica
	replErr    error
	replAt     time.Time
	refreshing bool
}

// leaseHolder is the loader's view of which node loads an integration
// (loader.Loader.LeaseHolder once loader leases exist).
type leaseHolder interface {
	LeaseHolder(integration int64) (node string, ok bool)
}

// ConnectNATS connects to the NATS servers of cfg.NATS with the credentials
// and TLS roots of cfg, named after the node, reconnecting for ever once
// connected. At start it tries for up to 15 s (or until ctx ends). Nothing it
// logs or returns holds a credential.
func ConnectNATS(ctx context.Context, cfg config.Config, logger *slog.Logger) (*nats.Conn, error) {
	opts := []nats.Option{
		nats.Name("hookhouse " + cfg.NodeName),
		nats.Timeout(3 * time.Second), // each connection attempt
		nats.MaxReconnects(-1),
		nats.ReconnectWait(500 * time.Millisecond),
		nats.ReconnectJitter(250*time.Millisecond, time.Second),
		// A server that stops answering (a cut cable sends no RST) is given
		// up after about 6 s instead of the default 4 minutes.
		nats.PingInterval(2 * time.Second),
		nats.MaxPingsOutstanding(3),
		nats.DisconnectErrHandler(func(nc *nats.Conn, err error) {
			if err != nil {
				logger.Warn("lost the connection to NATS; reconnecting (webhooks get 503 meanwhile)", "err", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			logger.Info("reconnected to NATS", "server", nc.ConnectedUrlRedacted())
		}),
		nats.ErrorHandler(func(nc *nats.Conn, sub *nats.Subscription, err error) {
			logger.Warn("NATS reported an error", "err", err)
		}),
	}
	if cfg.NATSCreds != "" {
		opts = append(opts, nats.UserCredentials(cfg.NATSCreds))
	}
	if cfg.NATSCA != "" {
		opts = append(opts, nats.RootCAs(cfg.NATSCA))
	}
	var shown []string
	for _, u := range cfg.NATSURLs() {
		shown = append(shown, config.RedactNATSURL(u))
	}
	deadline := time.Now().Add(15 * time.Second)
	for try := 0; ; try++ {
		nc, err := nats.Connect(strings.Join(cfg.NATSURLs(), ","), opts...)
		if err == nil {
			logger.Info("connected to NATS", "server", nc.ConnectedUrlRedacted(), "node", cfg.NodeName)
			return nc, nil
		}
		if refused(err) {
			return nil, fmt.Errorf("server: connect to NATS (%s): %w; check --nats-creds, --nats-ca and the URLs' scheme (tls:// for TLS)", strings.Join(shown, ","), err)
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return nil, fmt.Errorf("server: cannot reach any NATS server of --nats (%s): %w", strings.Join(shown, ","), err)
		}
		if try == 0 {
			logger.Warn("waiting for the NATS servers", "servers", strings.Join(shown, ","), "err", err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

// refused tells a connection the servers (or the client's own settings)
// refused, which waiting does not mend, from servers not reachable yet.
func refused(err error) bool {
	if errors.Is(err, nats.ErrAuthorization) || errors.Is(err, nats.ErrAuthExpired) || errors.Is(err, nats.ErrAuthRevoked) ||
		errors.Is(err, nats.ErrSecureConnRequired) || errors.Is(err, nats.ErrSecureConnWanted) {
		return true
	}
	msg := strings.ToLower(err.Error())
	for _, s := range []string{"nkey", "jwt", "creds", "authorization", "authentication", "certificate", "x509", "tls"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}

// openCluster connects to NATS and opens the state on JetStream (Open).
func (s *Server) openCluster(ctx context.Context) error {
	nc, err := ConnectNATS(ctx, s.cfg, s.logger.With("component", "nats"))
	if err != nil {
		return err
	}
	js, err := state.OpenJetStream(ctx, nc, s.logger.With("component", "log"), state.JetStreamOptions{
		Name: s.cfg.NATSStream, Replicas: s.cfg.NATSReplicas, Timeout: natsTimeout,
	})
	if err != nil {
		nc.Close()
		return fmt.Errorf("server: open the state on NATS JetStream (stream %s): %w", s.cfg.NATSStream, err)
	}
	s.state = js
	s.cluster = &cluster{nc: nc, js: js, node: s.cfg.NodeName}
	s.metrics.reg.MustRegister(&clusterMetrics{s: s,
		node:    prometheus.NewDesc("hookhouse_node_info", "This node's name in the cluster (always 1).", []string{"node"}, nil),
		current: prometheus.NewDesc("hookhouse_nats_replica_current", "1 if the stream's replica on this NATS server is current, 0 if it lags or is offline.", []string{"replica"}, nil),
		lease:   prometheus.NewDesc("hookhouse_loader_lease_held", "1 if this node holds the loader lease of the integration.", []string{"integration"}, nil),
	})
	return nil
}

// followControl starts the watch that brings other nodes' control changes
// into the control store's caches, and waits briefly for it to catch up (until
// it has, webhook URLs are checked against the cluster per request).
func (s *Server) followControl() {
	c := s.cluster
	c.watch = c.js.WatchControl(s.control.Apply)
	s.control.Follow(c.watch.Fresh)
	deadline := time.Now().Add(3 * time.Second)
	for !c.watch.Fresh() && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if err := c.watch.Err(); err != nil {
		s.logger.Warn("the control data's watch has not caught up yet; webhook URLs are checked against the cluster per request until it has", "err", err)
	}
}

// replicaInfo is the stream's replicas, asked at most every 3 s and never
// waited for longer than 1 s; while another request asks, the last answer.
func (c *cluster) replicaInfo() ([]state.Replica, error) {
	c.mu.Lock()
	if c.refreshing || time.Since(c.replAt) < 3*time.Second {
		r, err := c.replicas, c.replErr
		if c.replAt.IsZero() && err == nil {
			err = errors.New("not known yet")
		}
		c.mu.Unlock()
		return r, err
	}
	c.refreshing = true
	c.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	r, err := c.js.Replicas(ctx)
	cancel()
	c.mu.Lock()
	c.replicas, c.replErr, c.replAt, c.refreshing = r, err, time.Now(), false
	c.mu.Unlock()
	return r, err
}

// ClusterStatus is /status.json's "cluster" (cluster mode only). Nothing in it
// is a credential: URLs are shown with passwords and tokens replaced.
type ClusterStatus struct {
	Node string      `json:"node"`
	NATS *NATSStatus `json:"nats,omitempty"`
}

// NATSStatus is what a node knows of the NATS cluster.
type NATSStatus struct {
	Servers   []string `json:"servers"`   // the NATS servers this node knows
	Connected string   `json:"connected"` // the one it talks to now ("" while disconnected)
	Stream    string   `json:"stream"`
	// Replicas are the stream's copies, its leader first; empty when the
	// leader did not answer (ReplicasError says why).
	Replicas      []state.Replica `json:"replicas"`
	ReplicasError string          `json:"replicas_error,omitempty"`
	// ControlWatch is "current" when this node has every control change
	// (URLs, integrations) other nodes made up to a moment ago, else why not.
	ControlWatch string `json:"control_watch"`
}

// clusterStatus is the cluster block, nil on a single node. Without details
// it holds only the node's name (which node answered): the NATS servers and
// replicas are for the admin.
func (s *Server) clusterStatus(details bool) *ClusterStatus {
	c := s.cluster
	if c == nil {
		return nil
	}
	if !details {
		return &ClusterStatus{Node: c.node}
	}
	st := &ClusterStatus{Node: c.node, NATS: &NATSStatus{Stream: c.js.StreamName(), Servers: []string{}, Replicas: []state.Replica{}}}
	for _, u := range c.nc.Servers() {
		st.NATS.Servers = append(st.NATS.Servers, config.RedactNATSURL(u))
	}
	if c.nc.IsConnected() {
		st.NATS.Connected = c.nc.ConnectedUrlRedacted()
	}
	if r, err := c.replicaInfo(); err != nil {
		st.NATS.ReplicasError = err.Error()
	} else if r != nil {
		st.NATS.Replicas = r
	}
	st.NATS.ControlWatch = "current"
	if c.watch != nil {
		if err := c.watch.Err(); err != nil {
			st.NATS.ControlWatch = err.Error()
		}
	}
	return st
}

// loaderNode is the node that loads integration id, "" if unknown or on a
// single node.
func (s *Server) loaderNode(id int64) string {
	if s.cluster == nil {
		return ""
	}
	if lh, ok := any(s.loader).(leaseHolder); ok {
		if node, ok := lh.LeaseHolder(id); ok {
			return node
		}
	}
	return ""
}

// clusterMetrics are the cluster's metrics, read at scrape time.
type clusterMetrics struct {
	s                    *Server
	node, current, lease *prometheus.Desc
}

func (m *clusterMetrics) Describe(ch chan<- *prometheus.Desc) {
	ch <- m.node
	ch <- m.current
	ch <- m.lease
}

func (m *clusterMetrics) Collect(ch chan<- prometheus.Metric) {
	c := m.s.cluster
	ch <- prometheus.MustNewConstMetric(m.node, prometheus.GaugeValue, 1, c.node)
	if r, err := c.replicaInfo(); err == nil {
		for _, p := range r {
			v := 0.0
			if p.Current {
				v = 1
			}
			ch <- prometheus.MustNewConstMetric(m.current, prometheus.GaugeValue, v, p.Name)
		}
	}
	if m.s.loader == nil || m.s.control == nil {
		return
	}
	for _, in := range m.s.control.AllIntegrations() {
		v := 0.0
		if m.s.loaderNode(in.ID) == c.node {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(m.lease, prometheus.GaugeValue, v, strconv.FormatInt(in.ID, 10))
	}
}
