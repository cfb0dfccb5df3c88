//! Sync over async: the SDK client on a runtime of its own thread, and the turns writers
//! in one process take.

use super::*;

pub(super) type Job = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Runs SDK futures on a runtime of its own, on its own thread.
pub(super) struct Bridge {
    pub(super) jobs: tokio::sync::mpsc::UnboundedSender<Job>,
    pub(super) client: Client,
}

/// Which AWS profile and region reach the table (`--profile`, `--region`); unset parts come
/// from the usual chain.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AwsSelect {
    /// The named profile.
    pub profile: Option<String>,
    /// The region.
    pub region: Option<String>,
}

impl Bridge {
    pub(super) fn start(aws: AwsSelect) -> Result<Bridge, StoreError> {
        let (jobs, mut rx) = tokio::sync::mpsc::unbounded_channel::<Job>();
        let (ready_tx, ready_rx) = std::sync::mpsc::sync_channel(1);
        std::thread::Builder::new()
            .name("sombrero-dynamodb".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e.to_string()));
                        return;
                    }
                };
                rt.block_on(async move {
                    // A hung endpoint must not hang a broker thread for ever.
                    let timeouts = TimeoutConfig::builder()
                        .connect_timeout(Duration::from_secs(5))
                        .operation_timeout(Duration::from_secs(30))
                        .build();
                    let mut loader =
                        aws_config::defaults(BehaviorVersion::latest()).timeout_config(timeouts);
                    if let Some(p) = aws.profile {
                        loader = loader.profile_name(p);
                    }
                    if let Some(r) = aws.region {
                        loader = loader.region(aws_config::Region::new(r));
                    }
                    let cfg = loader.load().await;
                    let _ = ready_tx.send(Ok(Client::new(&cfg)));
                    // Ends when the store (the only sender) is dropped.
                    while let Some(job) = rx.recv().await {
                        tokio::spawn(job);
                    }
                });
            })
            .map_err(|e| StoreError::Bridge(e.to_string()))?;
        let client = ready_rx
            .recv()
            .map_err(|e| StoreError::Bridge(e.to_string()))?
            .map_err(StoreError::Bridge)?;
        Ok(Bridge { jobs, client })
    }

    /// Runs `fut` on the bridge's runtime and waits for its result.
    pub(super) fn run<T, F>(&self, fut: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: Future<Output = Result<T, StoreError>> + Send + 'static,
    {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.jobs
            .send(Box::pin(async move {
                let _ = tx.send(fut.await);
            }))
            .map_err(|_| StoreError::Bridge("it has exited".into()))?;
        rx.recv()
            .map_err(|_| StoreError::Bridge("a call was dropped unanswered".into()))?
    }
}

/// A first-come, first-served lock: writers go in arrival order, so none starves behind
/// luckier threads (`std::sync::Mutex` promises no order).
#[derive(Default)]
pub(super) struct Turns {
    /// (next ticket to hand out, ticket being served)
    pub(super) tickets: Mutex<(u64, u64)>,
    pub(super) served: Condvar,
}

/// Holding a turn; dropping it (also when unwinding) lets the next writer in.
pub(super) struct Turn<'a>(&'a Turns);

impl Turns {
    pub(super) fn lock(&self) -> MutexGuard<'_, (u64, u64)> {
        // A poisoned lock only means a thread panicked while counting; the counts are whole.
        self.tickets.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn take(&self) -> Turn<'_> {
        let mut t = self.lock();
        let mine = t.0;
        t.0 += 1;
        while t.1 != mine {
            t = self.served.wait(t).unwrap_or_else(|p| p.into_inner());
        }
        Turn(self)
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        self.0.lock().1 += 1;
        self.0.served.notify_all();
    }
}
