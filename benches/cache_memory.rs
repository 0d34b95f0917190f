//! Bytes per cached entry, measured with a counting global allocator.
//!
//! ```sh
//! cargo bench --bench cache_memory
//! ```
//!
//! Resolves 100,000 distinct realistic tokens through the layer (an instant
//! resolver, a cache big enough for all of them), then reports the heap growth
//! that stays once every request is done, divided by the number of entries.

use std::alloc::{GlobalAlloc, Layout, System};
use std::convert::Infallible;
use std::sync::atomic::{AtomicIsize, Ordering};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use tower::{ServiceExt, service_fn};
use tower_layer::Layer;
use tower_resolve_customer::{
    RegistrationToken, RequestBody, Resolutions, ResolveCustomerLayer, ResolvedCustomer,
    TokenSource,
};

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: defers to the system allocator, only counting sizes.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const ENTRIES: usize = 100_000;
use tower_resolve_customer::TOKEN_HEADER as HEADER;

/// A request carrying the `i`th token: 184 characters, like a real one.
fn request(i: usize) -> Request<Full<Bytes>> {
    Request::get("/")
        .header(HEADER, format!("{i:0>182}=="))
        .body(Full::new(Bytes::new()))
        .expect("request")
}

fn main() {
    // `cargo test --benches` runs every bench target once: keep that quick.
    let entries = if std::env::args().any(|a| a == "--bench") {
        ENTRIES
    } else {
        1_000
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        // A realistic customer, as AWS answers it.
        let customer = ResolvedCustomer::new("123456789012", "prod-abc123xyz0987654321")
            .with_customer_identifier("cust-0123456789abcdef")
            .with_license_arn("arn:aws:license-manager::123456789012:license:l-0123456789abcdef0123456789abcdef")
            .with_agreement_id("agmt-0123456789abcdef0123456789");
        let resolutions = Resolutions::builder(move |_: RegistrationToken| {
            let customer = customer.clone();
            async move {
                // Each token resolves to its own customer record, as in life.
                Ok(ResolvedCustomer::new(
                    customer.customer_aws_account_id(),
                    customer.product_code(),
                )
                .with_customer_identifier(customer.customer_identifier().unwrap_or_default())
                .with_license_arn(customer.license_arn().unwrap_or_default())
                .with_agreement_id(customer.agreement_id().unwrap_or_default()))
            }
        })
        .cache_capacity(entries as u64 + 1_000)
        .build();
        let layer = ResolveCustomerLayer::from_resolutions(resolutions)
            .token_source(TokenSource::header(HEADER));
        let service = layer.layer(service_fn(|_: Request<RequestBody<Full<Bytes>>>| async {
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::new())))
        }));

        // Warm up allocator pools and the runtime with a first batch.
        for i in 0..1_000 {
            service.clone().oneshot(request(entries + i)).await.expect("infallible");
        }
        let before = LIVE.load(Ordering::Relaxed);
        for i in 0..entries {
            let response = service.clone().oneshot(request(i)).await.expect("infallible");
            assert_eq!(response.status(), 200);
        }
        // Let the resolve tasks finish storing their answers.
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        let after = LIVE.load(Ordering::Relaxed);
        let per_entry = (after - before) as f64 / entries as f64;
        println!(
            "cache_memory: {entries} entries, heap growth {} bytes, {per_entry:.0} bytes per cached entry (target <= 512)",
            after - before
        );
        drop(service);
    });
}
