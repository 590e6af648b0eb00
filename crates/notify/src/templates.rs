//! The wording of notices: Spanish, plain text, and never a secret (the templates take only a
//! name, an IP address, the incident handler's own message and a SAT certificate's public
//! facts: its kind, RFC, number and expiry, and who stored or deleted it). A password-reset
//! body holds [`RESET_TOKEN_PLACEHOLDER`] where its token goes and [`RESET_LINK_PLACEHOLDER`]
//! where a link to the reset page may go; the outbox worker fills both in at delivery.

use crate::Template;

/// A subject and a body, ready to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// Subject line.
    pub subject: String,
    /// Plain-text body.
    pub body: String,
}

/// Where a password-reset body's token goes. The outbox worker replaces it, in messages of the
/// password-reset template only, with the token of the message's own reset (its cause); a
/// recipient's name holding this text gets nothing but their own token.
pub const RESET_TOKEN_PLACEHOLDER: &str = "[[token]]";

/// Where a password-reset body's link to the reset page goes: the outbox worker replaces it
/// with the link when the server knows the page (`OutboxWorker::with_reset_page`), and with
/// nothing otherwise. Like the token's, only in password-reset messages.
pub const RESET_LINK_PLACEHOLDER: &str = "[[link]]";

const SIGNATURE: &str = "\n\n— Seguridad de IncrementaCRM\n\
Este mensaje es automático. IncrementaCRM nunca te pedirá tu contraseña, tus códigos de \
verificación ni la contraseña de tu e.firma o CSD por correo.";

const NOT_YOU: &str = "Si no fuiste tú, cambia tu contraseña de inmediato y avisa al \
administrador de tu empresa.";

/// Renders `template` for a recipient called `name` (Spanish, plain text).
///
/// ```
/// let mail = notify::render(&notify::Template::PasswordChanged, "Ana");
/// assert_eq!(mail.subject, "Tu contraseña de IncrementaCRM cambió");
/// assert!(mail.body.starts_with("Hola, Ana:"));
/// ```
///
/// Renders `template` for a recipient called `name`.
#[must_use]
pub fn render(template: &Template, name: &str) -> Rendered {
    let greeting = format!("Hola, {name}:\n\n");
    let (subject, text) = match template {
        Template::PasswordChanged => (
            "Tu contraseña de IncrementaCRM cambió".to_owned(),
            format!("La contraseña de tu cuenta se cambió. {NOT_YOU}"),
        ),
        Template::MfaEnabled => (
            "Activaste la verificación en dos pasos".to_owned(),
            "La verificación en dos pasos quedó activada en tu cuenta. Guarda tus códigos de \
             recuperación en un lugar seguro."
                .to_owned(),
        ),
        Template::MfaDisabled => (
            "Se desactivó la verificación en dos pasos".to_owned(),
            format!("La verificación en dos pasos se desactivó en tu cuenta. {NOT_YOU}"),
        ),
        Template::RecoveryCodesRegenerated => (
            "Generaste nuevos códigos de recuperación".to_owned(),
            format!(
                "Se generaron nuevos códigos de recuperación; los anteriores ya no sirven. {NOT_YOU}"
            ),
        ),
        Template::AccountDeactivated => (
            "Tu cuenta de IncrementaCRM fue desactivada".to_owned(),
            "Un administrador de tu empresa desactivó tu cuenta y cerró tus sesiones. Si crees \
             que es un error, habla con él."
                .to_owned(),
        ),
        Template::PasswordReset { expires_at } => (
            "Restablece tu contraseña de IncrementaCRM".to_owned(),
            format!(
                "Alguien pidió restablecer la contraseña de tu cuenta. Si fuiste tú, usa este \
                 código en la pantalla de restablecimiento; sirve una sola vez, hasta el {} \
                 (hora UTC):\n\n{RESET_TOKEN_PLACEHOLDER}{RESET_LINK_PLACEHOLDER}\n\nAl usarlo se cierran todas tus \
                 sesiones. Si no lo pediste, ignora este mensaje: tu contraseña no cambia, y \
                 nadie del equipo de IncrementaCRM te pedirá este código.",
                expires_at.format("%d/%m/%Y a las %H:%M")
            ),
        ),
        Template::EmailChangeCode { expires_at } => (
            "Confirma tu nuevo correo en IncrementaCRM".to_owned(),
            format!(
                "Pediste usar esta dirección para tu cuenta de IncrementaCRM. Para confirmarlo, \
                 escribe este código en la aplicación, con tu sesión abierta; sirve una sola vez, \
                 hasta el {} (hora UTC):\n\n{RESET_TOKEN_PLACEHOLDER}\n\nSi no lo pediste, \
                 ignora este mensaje: la cuenta sigue con su correo de siempre.",
                expires_at.format("%d/%m/%Y a las %H:%M")
            ),
        ),
        Template::EmailChangeRequested { to } => (
            "Se pidió cambiar el correo de tu cuenta".to_owned(),
            format!(
                "Se pidió cambiar el correo de tu cuenta de IncrementaCRM a {to}. El cambio \
                 ocurre solo si se confirma con un código enviado a esa dirección. {NOT_YOU}"
            ),
        ),
        Template::EmailChanged {
            to,
            revert_until: None,
        } => (
            "El correo de tu cuenta cambió".to_owned(),
            format!(
                "Tu cuenta de IncrementaCRM ahora usa la dirección {to}; a esta ya no llegarán \
                 avisos ni códigos, y se cerraron tus otras sesiones. Si no fuiste tú, avisa de \
                 inmediato al administrador de tu empresa."
            ),
        ),
        Template::EmailChanged {
            to,
            revert_until: Some(until),
        } => (
            "El correo de tu cuenta cambió".to_owned(),
            format!(
                "Tu cuenta de IncrementaCRM ahora usa la dirección {to}; a esta ya no llegarán \
                 avisos ni códigos, y se cerraron tus otras sesiones.\n\nSi no fuiste tú, \
                 deshaz el cambio con este código en la pantalla «No fui yo» (o pídeselo al \
                 administrador de tu empresa); sirve una sola vez, hasta el {} (hora UTC):\n\n\
                 {RESET_TOKEN_PLACEHOLDER}\n\nAl usarlo, la cuenta vuelve a esta dirección, se \
                 cierran todas sus sesiones, la contraseña deja de servir y se quita la \
                 verificación en dos pasos que se haya activado desde el cambio: después pide \
                 una contraseña nueva con «Olvidé mi contraseña». Si fuiste tú, ignora el \
                 código.",
                until.format("%d/%m/%Y a las %H:%M")
            ),
        ),
        Template::EmailChangeReverted { from } => (
            "Tu cuenta volvió a esta dirección".to_owned(),
            format!(
                "Se deshizo el cambio del correo de tu cuenta de IncrementaCRM a {from}: la \
                 cuenta vuelve a usar esta dirección, se cerraron todas sus sesiones y la \
                 contraseña ya no sirve. Pide una nueva con «Olvidé mi contraseña»; el código \
                 llegará aquí. Quien cambió el correo conocía tu contraseña: la verificación en \
                 dos pasos que se haya activado desde el cambio también se quitó (la que tenías \
                 antes sigue activa)."
            ),
        ),
        Template::EmailChangeUndone { to } => (
            "Se deshizo el cambio de correo".to_owned(),
            format!(
                "La cuenta de IncrementaCRM que usaba esta dirección volvió a {to} con el código \
                 que se envió ahí, y se cerraron sus sesiones. Si el cambio de correo lo hiciste \
                 tú, habla con el administrador de tu empresa."
            ),
        ),
        Template::NewIpLogin { ip } => (
            "Inicio de sesión desde una dirección nueva".to_owned(),
            format!(
                "Se inició sesión en tu cuenta desde la dirección IP {ip}, que no habíamos visto antes. {NOT_YOU}"
            ),
        ),
        Template::Incident { message } => (
            "Aviso de seguridad sobre tu cuenta".to_owned(),
            format!(
                "Te escribimos porque un incidente de seguridad podría afectar tu cuenta.\n\n{message}\n\n\
                 Te recomendamos cambiar tu contraseña y revisar tus sesiones activas."
            ),
        ),
        Template::CredentialChanged {
            uploaded,
            kind,
            rfc,
            certificate_number,
            by,
        } => {
            let (the, a) = articles(kind);
            let what =
                format!("{the} {kind} del RFC {rfc} (certificado número {certificate_number})");
            if *uploaded {
                (
                    format!("Se guardó {a} {kind} en la bóveda de tu empresa"),
                    format!(
                        "{by} guardó {what} en la bóveda de IncrementaCRM; con él se firman \
                         documentos de tu empresa. Si nadie lo esperaba, revisa la bitácora de \
                         auditoría y avisa al propietario de la cuenta."
                    ),
                )
            } else {
                (
                    format!("Se eliminó {a} {kind} de la bóveda de tu empresa"),
                    format!(
                        "{by} eliminó {what} de la bóveda de IncrementaCRM; ya no se podrá firmar \
                         con él. Si nadie lo esperaba, revisa la bitácora de auditoría y avisa al \
                         propietario de la cuenta."
                    ),
                )
            }
        }
        Template::CredentialExpiring {
            kind,
            rfc,
            certificate_number,
            valid_to,
            days_to_expiry,
            expired,
        } => credential_expiring(
            kind,
            rfc,
            certificate_number,
            *valid_to,
            *days_to_expiry,
            *expired,
        ),
    };
    Rendered {
        subject,
        body: format!("{greeting}{text}{SIGNATURE}"),
    }
}

/// The definite and indefinite articles of a credential's kind: "el"/"un" CSD, "la"/"una"
/// e.firma.
fn articles(kind: &str) -> (&'static str, &'static str) {
    if kind == "e.firma" {
        ("la", "una")
    } else {
        ("el", "un")
    }
}

/// "1 día", "5 días".
fn days(n: i64) -> String {
    if n == 1 {
        "1 día".to_owned()
    } else {
        format!("{n} días")
    }
}

fn credential_expiring(
    kind: &str,
    rfc: &str,
    certificate_number: &str,
    valid_to: kernel::Timestamp,
    days_to_expiry: i64,
    expired: bool,
) -> (String, String) {
    let when = valid_to.format("%d/%m/%Y a las %H:%M (hora UTC)");
    let the = match articles(kind).0 {
        "la" => "La",
        _ => "El",
    };
    let what = format!("{the} {kind} del RFC {rfc} (certificado número {certificate_number})");
    let replace = if kind == "CSD" {
        "Tramita un CSD nuevo en el portal del SAT con tu e.firma y súbelo a la bóveda de \
         IncrementaCRM para seguir sellando tus facturas."
    } else {
        "Renueva tu e.firma ante el SAT y sube la nueva a la bóveda de IncrementaCRM para seguir \
         firmando con ella."
    };
    if expired {
        (
            format!("Tu {kind} del RFC {rfc} venció"),
            format!("{what} venció el {when} y ya no sirve para firmar. {replace}"),
        )
    } else if days_to_expiry < 1 {
        (
            format!("Tu {kind} del RFC {rfc} vence en menos de un día"),
            format!("{what} vence el {when}, en menos de un día. {replace}"),
        )
    } else {
        (
            format!("Tu {kind} del RFC {rfc} vence en {}", days(days_to_expiry)),
            format!(
                "{what} vence el {when}, en {}. {replace}",
                days(days_to_expiry)
            ),
        )
    }
}
