//! `rbac::authorize` against casbin-rs on an equivalent RBAC-with-domains model, in one run.
//!
//! Run: `cargo bench -p rbac --bench authorize`. Figures go to docs/performance.md.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::hint::black_box;

use casbin::{CoreApi, DefaultModel, Enforcer, MemoryAdapter, MgmtApi, RbacApi};
use criterion::{Criterion, criterion_group, criterion_main};
use kernel::{CompanyId, SessionId, UserId};
use rbac::{Actor, Permission, Role, Scope, authorize};

const MODEL: &str = r#"
[request_definition]
r = sub, dom, act

[policy_definition]
p = sub, dom, act

[role_definition]
g = _, _, _

[policy_effect]
e = some(where (p.eft == allow))

[matchers]
m = g(r.sub, p.sub, r.dom) && r.dom == p.dom && r.act == p.act
"#;

/// The same policy as the role defaults: every (role, permission) pair in 50 companies, and one
/// user of each role per company.
fn casbin_enforcer(rt: &tokio::runtime::Runtime) -> Enforcer {
    rt.block_on(async {
        let model = DefaultModel::from_str(MODEL).await.unwrap();
        let mut e = Enforcer::new(model, MemoryAdapter::default())
            .await
            .unwrap();
        let mut policies = Vec::new();
        let mut groupings = Vec::new();
        for c in 0..50 {
            let dom = format!("company{c}");
            for role in Role::ALL {
                for p in role.default_permissions().iter() {
                    policies.push(vec![
                        role.as_str().to_owned(),
                        dom.clone(),
                        p.as_str().to_owned(),
                    ]);
                }
                groupings.push(vec![
                    format!("{}-{c}", role.as_str()),
                    role.as_str().to_owned(),
                    dom.clone(),
                ]);
            }
        }
        e.add_policies(policies).await.unwrap();
        e.add_grouping_policies(groupings).await.unwrap();
        e
    })
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let enforcer = casbin_enforcer(&rt);
    assert!(
        enforcer
            .enforce(("admin-7", "company7", "users.manage"))
            .unwrap()
    );
    assert!(
        !enforcer
            .enforce(("vendor-7", "company7", "users.manage"))
            .unwrap()
    );
    assert!(
        !enforcer
            .enforce(("admin-7", "company8", "users.manage"))
            .unwrap()
    );
    assert!(enforcer.has_role_for_user("admin-7", "admin", Some("company7")));

    let admin = Actor::new(
        UserId::from_uuid(uuid::Uuid::from_u128(1)),
        CompanyId::from_uuid(uuid::Uuid::from_u128(7)),
        SessionId::from_uuid(uuid::Uuid::from_u128(2)),
        Role::Admin,
        Role::Admin.default_permissions(),
    );
    let mut vendor = admin.clone();
    vendor.role = Role::Vendor;
    vendor.permissions = Role::Vendor.default_permissions();
    assert!(authorize(&admin, Permission::UsersManage, Scope::Company).is_allowed());
    assert!(!authorize(&vendor, Permission::UsersManage, Scope::Company).is_allowed());

    let mut g = c.benchmark_group("authorize");
    g.bench_function("rbac::authorize allow", |b| {
        b.iter(|| {
            authorize(
                black_box(&admin),
                black_box(Permission::UsersManage),
                black_box(Scope::Company),
            )
        });
    });
    g.bench_function("rbac::authorize deny", |b| {
        b.iter(|| {
            authorize(
                black_box(&vendor),
                black_box(Permission::UsersManage),
                black_box(Scope::Company),
            )
        });
    });
    g.bench_function("rbac role defaults + authorize", |b| {
        b.iter(|| {
            let role = black_box(Role::Admin);
            let actor = Actor::new(
                admin.user_id,
                admin.company_id,
                admin.session_id,
                role,
                role.default_permissions(),
            );
            authorize(&actor, black_box(Permission::UsersManage), Scope::Company)
        });
    });
    g.bench_function("casbin enforce allow", |b| {
        b.iter(|| {
            enforcer
                .enforce(black_box(("admin-7", "company7", "users.manage")))
                .unwrap()
        });
    });
    g.bench_function("casbin enforce deny", |b| {
        b.iter(|| {
            enforcer
                .enforce(black_box(("vendor-7", "company7", "users.manage")))
                .unwrap()
        });
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
