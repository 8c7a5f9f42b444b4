//! The process's one AMQP connection: heartbeats from config, lapin's automatic recovery
//! (reconnect with capped exponential backoff, then replay of topology, QoS and consumers),
//! and a bounded wait at start so a role without a broker fails with a clear error.

use std::{str::FromStr, time::Duration};

use lapin::{uri::AMQPUri, Connection, ConnectionProperties};

use super::{consumer::Consumer, publisher::Publisher, topology::Topology};
use crate::{config::BrokerSettings, messages::Message};

/// Why the broker could not be used.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("broker URL {url} is invalid: {message}")]
    BadUrl { url: String, message: String },
    #[error("cannot connect to RabbitMQ at {url}: {source}")]
    Connect { url: String, source: lapin::Error },
    #[error("RabbitMQ at {url} did not accept a connection within {timeout:?}")]
    ConnectTimeout { url: String, timeout: Duration },
    #[error("declaring queues under prefix `{prefix}` failed (an existing queue with other arguments needs deleting, or use another prefix): {source}")]
    Topology {
        prefix: String,
        source: lapin::Error,
    },
    #[error("opening a channel failed: {0}")]
    Channel(#[source] lapin::Error),
}

/// A connected broker and the topology this fleet uses on it.
#[derive(Debug)]
pub struct Broker {
    connection: Connection,
    topology: Topology,
    url: String,
}

impl Broker {
    /// Connects with heartbeats and recovery enabled. `connection_name` shows in RabbitMQ's
    /// connection list (use the role name).
    pub async fn connect(
        settings: &BrokerSettings,
        connection_name: &str,
    ) -> Result<Self, BrokerError> {
        let url = settings.url.redacted();
        let mut uri =
            AMQPUri::from_str(settings.url.expose()).map_err(|message| BrokerError::BadUrl {
                url: url.clone(),
                message,
            })?;
        uri.query.heartbeat = Some(settings.heartbeat_secs);
        let max_delay = Duration::from_secs(settings.reconnect_max_delay_secs);
        let properties = ConnectionProperties::default()
            .with_connection_name(connection_name.into())
            // Keep retrying for as long as the broker is away; an operator restarting
            // RabbitMQ should not have to restart the fleet too.
            .configure_backoff(move |backoff| backoff.with_max_delay(max_delay).without_max_times())
            .enable_auto_recover();
        let timeout = Duration::from_secs(settings.connect_timeout_secs);
        let connection = tokio::time::timeout(timeout, Connection::connect_uri(uri, properties))
            .await
            .map_err(|_| BrokerError::ConnectTimeout {
                url: url.clone(),
                timeout,
            })?
            .map_err(|source| BrokerError::Connect {
                url: url.clone(),
                source,
            })?;
        tracing::info!(broker = %url, "connected to RabbitMQ");
        Ok(Self {
            connection,
            topology: Topology::new(&settings.prefix, settings.delivery_limit),
            url,
        })
    }

    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    /// The redacted URL, for messages.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Declares the exchanges and queues; safe to call from every role at start.
    pub async fn declare_topology(&self) -> Result<(), BrokerError> {
        let channel = self.channel().await?;
        let declared = self.topology.declare(&channel).await;
        let _ = channel.close(200, "topology declared".into()).await;
        declared.map_err(|source| BrokerError::Topology {
            prefix: self.topology.prefix.clone(),
            source,
        })
    }

    /// A publisher of `M` on its own confirm-mode channel.
    pub async fn publisher<M: Message>(&self) -> Result<Publisher<M>, BrokerError> {
        Publisher::open(self.channel().await?, &self.topology)
            .await
            .map_err(BrokerError::Channel)
    }

    /// A consumer of `M` that holds at most `prefetch` unacknowledged deliveries.
    pub async fn consumer<M: Message>(
        &self,
        prefetch: u16,
        tag: &str,
    ) -> Result<Consumer<M>, BrokerError> {
        Consumer::open(self.channel().await?, &self.topology, prefetch, tag)
            .await
            .map_err(BrokerError::Channel)
    }

    /// A raw channel, for operations the typed API does not cover (tests, passive declares).
    pub async fn channel(&self) -> Result<lapin::Channel, BrokerError> {
        self.connection
            .create_channel()
            .await
            .map_err(BrokerError::Channel)
    }

    /// Closes the connection politely; errors are logged, not returned, since this runs on
    /// the way out.
    pub async fn close(&self) {
        if let Err(err) = self
            .connection
            .close(200, "splatfleet shutting down".into())
            .await
        {
            tracing::debug!(%err, "closing the broker connection");
        }
    }
}
