// Qt image format plugin for .gsi files (Gaussian-splatting images), on gsimg's C API.
//
// Qt programs (KDE's Gwenview, Okular's image backend, any QImageReader user) pick up image
// format plugins from <plugins>/imageformats/. A .gsi picture renders sharply at any size, so
// this handler renders what QImageReader asks for: setScaledSize() gives the size the whole
// picture is rendered at, and setScaledClipRect() the part of that scaled picture to render
// (a zoomed view), never a native-size raster scaled afterwards. The file's EXIF orientation is
// reported as the image transformation (QImageReader applies it with setAutoTransform), its
// ICC profile as the image's colour space.
//
// Built and tested with Qt 5.15; every call it makes exists in Qt 6 too (`make QT=Qt6`), a
// build that is not tested.
//
// SPDX-License-Identifier: MIT OR Apache-2.0

#include <QByteArray>
#include <QColorSpace>
#include <QIODevice>
#include <QImage>
#include <QImageIOHandler>
#include <QImageIOPlugin>
#include <QRect>
#include <QSize>
#include <QVariant>

#include <gsimg/gsimg.h>

namespace {

const char kSignature[8] = {'\x89', 'G', 'S', 'I', '\r', '\n', '\x1a', '\n'};

// EXIF orientation (1..8) as the transformation Qt applies to show the picture upright.
QImageIOHandler::Transformations exifToTransformation(uint32_t o)
{
    switch (o) {
    case 2: return QImageIOHandler::TransformationMirror;
    case 3: return QImageIOHandler::TransformationRotate180;
    case 4: return QImageIOHandler::TransformationFlip;
    case 5: return QImageIOHandler::TransformationFlipAndRotate90;
    case 6: return QImageIOHandler::TransformationRotate90;
    case 7: return QImageIOHandler::TransformationMirrorAndRotate90;
    case 8: return QImageIOHandler::TransformationRotate270;
    default: return QImageIOHandler::TransformationNone;
    }
}

class GsiHandler : public QImageIOHandler
{
public:
    bool canRead() const override
    {
        if (device() != nullptr && canRead(device())) {
            setFormat("gsi");
            return true;
        }
        return false;
    }

    static bool canRead(QIODevice *device)
    {
        return device->peek(8) == QByteArray(kSignature, 8);
    }

    bool read(QImage *image) override
    {
        if (!ensureOpen())
            return false;
        QSize full = m_scaledSize.isValid() && !m_scaledSize.isEmpty()
                         ? m_scaledSize
                         : QSize(int(m_info.width), int(m_info.height));
        QRect region(QPoint(0, 0), full);
        if (m_scaledClipRect.isValid()) {
            region = m_scaledClipRect.intersected(region);
            if (region.isEmpty()) {
                qWarning("gsi: the clip rectangle is outside the scaled picture");
                return false;
            }
        }
        const bool alpha = m_info.has_alpha != 0;
        QImage out(region.size(), alpha ? QImage::Format_RGBA8888 : QImage::Format_RGB888);
        if (out.isNull()) {
            qWarning("gsi: not enough memory for a %dx%d picture", region.width(), region.height());
            return false;
        }
        const size_t stride = size_t(out.bytesPerLine());
        const size_t len = stride * size_t(out.height());
        GsimgStatus st = gsimg_decoder_render_region(
            m_decoder, uint32_t(full.width()), uint32_t(full.height()), uint32_t(region.x()),
            uint32_t(region.y()), uint32_t(region.width()), uint32_t(region.height()),
            alpha ? GSIMG_PIXEL_RGBA8 : GSIMG_PIXEL_RGB8, out.bits(), stride, len);
        if (st != GSIMG_OK) {
            qWarning("gsi: %s", gsimg_last_error());
            return false;
        }
        const uint8_t *icc = nullptr;
        size_t icc_len = 0;
        if (m_info.icc_profile_len > 0
            && gsimg_decoder_icc_profile(m_decoder, &icc, &icc_len) == GSIMG_OK && icc_len > 0) {
            out.setColorSpace(QColorSpace::fromIccProfile(
                QByteArray(reinterpret_cast<const char *>(icc), int(icc_len))));
        }
        *image = out;
        m_done = true;
        return true;
    }

    bool supportsOption(ImageOption option) const override
    {
        return option == Size || option == ScaledSize || option == ScaledClipRect
            || option == ImageFormat || option == ImageTransformation;
    }

    QVariant option(ImageOption option) const override
    {
        auto *self = const_cast<GsiHandler *>(this);
        if (!self->ensureOpen())
            return {};
        switch (option) {
        case Size: return QSize(int(m_info.width), int(m_info.height));
        case ScaledSize: return m_scaledSize;
        case ScaledClipRect: return m_scaledClipRect;
        case ImageFormat:
            return int(m_info.has_alpha ? QImage::Format_RGBA8888 : QImage::Format_RGB888);
        case ImageTransformation: return int(exifToTransformation(m_info.orientation));
        default: return {};
        }
    }

    void setOption(ImageOption option, const QVariant &value) override
    {
        if (option == ScaledSize)
            m_scaledSize = value.toSize();
        else if (option == ScaledClipRect)
            m_scaledClipRect = value.toRect();
    }

    // One picture per file: after it, there is no next image.
    int imageCount() const override { return 1; }
    bool jumpToNextImage() override { return false; }

    ~GsiHandler() override { gsimg_decoder_free(m_decoder); }

private:
    // Reads the whole file and opens it (once).
    bool ensureOpen()
    {
        if (m_decoder != nullptr)
            return true;
        if (m_failed || device() == nullptr || m_done)
            return false;
        const QByteArray data = device()->readAll();
        GsimgStatus st = gsimg_decoder_new_from_memory(
            reinterpret_cast<const uint8_t *>(data.constData()), size_t(data.size()), &m_decoder);
        if (st == GSIMG_OK)
            st = gsimg_decoder_info(m_decoder, &m_info);
        if (st != GSIMG_OK) {
            qWarning("gsi: %s", gsimg_last_error());
            gsimg_decoder_free(m_decoder);
            m_decoder = nullptr;
            m_failed = true;
            return false;
        }
        if (m_info.width > uint32_t(INT32_MAX) || m_info.height > uint32_t(INT32_MAX)) {
            m_failed = true;
            return false;
        }
        return true;
    }

    GsimgDecoder *m_decoder = nullptr;
    GsimgInfo m_info{};
    QSize m_scaledSize;
    QRect m_scaledClipRect;
    bool m_failed = false;
    bool m_done = false;
};

} // namespace

class GsiPlugin : public QImageIOPlugin
{
    Q_OBJECT
    Q_PLUGIN_METADATA(IID "org.qt-project.Qt.QImageIOHandlerFactoryInterface" FILE "gsi.json")

public:
    Capabilities capabilities(QIODevice *device, const QByteArray &format) const override
    {
        if (format == "gsi")
            return CanRead;
        if (!format.isEmpty() || device == nullptr || !device->isOpen() || !device->isReadable())
            return {};
        return GsiHandler::canRead(device) ? CanRead : Capabilities();
    }

    QImageIOHandler *create(QIODevice *device, const QByteArray &format) const override
    {
        auto *handler = new GsiHandler;
        handler->setDevice(device);
        handler->setFormat(format);
        return handler;
    }
};

#include "gsihandler.moc"
